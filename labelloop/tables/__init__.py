"""Tables: Arrow schemas of every labelloop table, declared once (:mod:`~labelloop.tables.schemas`),
and atomic Parquet reads and writes on a local folder or an object store
(:mod:`~labelloop.tables.parquet`). Where each table of a workspace lives:
:mod:`labelloop.workspace.repo`.
"""

from labelloop.tables.parquet import read_parquet, read_rows, read_schema, read_table, to_table, write_rows, write_table

__all__ = ["read_parquet", "read_rows", "read_schema", "read_table", "to_table", "write_rows", "write_table"]
