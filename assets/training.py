"""detector_training: fine-tune RT-DETRv2 on the release, with the blocking check candidate_beats_current."""

import dagster as dg

from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.training.data import ReleaseDataError
from labelloop.training.promotion import promote
from labelloop.training.run import TrainingError, train_release
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource

CHECK = "candidate_beats_current"


@dg.asset(deps=["dataset_release"], group_name="training", kinds={"python", "pytorch"}, pool="gpu",
          check_specs=[dg.AssetCheckSpec(CHECK, asset="detector_training", blocking=True,
                                         description="the paired bootstrap 95% interval of AP(candidate) - "
                                                     "AP(current) on the test split lies above training.promote_margin")])
def detector_training(context: dg.AssetExecutionContext, storage: WorkspaceResource,
                      prelabeler: PreLabelerResource) -> dg.MaterializeResult:
    """A detector fine-tuned on the release in release/ (labelloop.training.run.train_release):
    the candidate's checkpoint, model card and models-table row; the candidate and the current
    pre-labeler evaluated on the release's reviewed val/test images (COCO AP). The candidate
    becomes the pre-labeler only when the blocking check candidate_beats_current passes."""
    ws = storage.workspace()

    def progress(p) -> None:
        if p.step == p.steps:
            context.log.info(f"epoch {p.epoch}/{p.epochs} step {p.global_step}: loss {p.loss:.4f}")

    try:
        current = prelabeler.get(ws.config(), root=str(ws.root))
        card = train_release(ws, progress=progress, current=current)
    except (TrainingError, ReleaseDataError, CheckpointError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    gate = card["metrics"]["gate"]
    if gate["promote"]:
        promote(ws, card["name"], by=f"dagster run {context.run_id}", why=gate["reason"])
    test = card["metrics"]["candidate"].get("test", {})
    return dg.MaterializeResult(
        metadata={"model": card["name"], "release": card["release"], "labels_sha256": card["labels_sha256"],
                  "checkpoint_sha256": card["checkpoint_sha256"], "test_AP": test.get("AP", -1.0),
                  "metrics": dg.MetadataValue.json(card["metrics"]), "promoted": gate["promote"],
                  "card": dg.MetadataValue.path(card["card_path"])},
        data_version=dg.DataVersion(card["checkpoint_sha256"]),
        check_results=[dg.AssetCheckResult(check_name=CHECK, passed=bool(gate["promote"]),
                                           severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"reason": gate["reason"]})])
