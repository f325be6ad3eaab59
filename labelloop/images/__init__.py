"""Image files: identity (sha256 image_id), header checks and decoding to RGB with the EXIF
orientation applied (:mod:`~labelloop.images.files`), colour modes (:mod:`~labelloop.images.modes`),
perceptual hashes and duplicate groups (:mod:`~labelloop.images.phash`), and the real photos
shipped inside installed packages (:mod:`~labelloop.images.samples`)."""

from labelloop.images.files import (
                                    ImageError,
                                    check_image_id,
                                    hash_file,
                                    inspect_image,
                                    load_rgb,
                                    phash_file,
                                    save_release_copy,
                                    sha256_file,
)
from labelloop.images.phash import PHASH_METHOD, assign_duplicates, hamming

__all__ = ["PHASH_METHOD", "ImageError", "assign_duplicates", "check_image_id", "hamming", "hash_file",
           "inspect_image", "load_rgb", "phash_file", "save_release_copy", "sha256_file"]
