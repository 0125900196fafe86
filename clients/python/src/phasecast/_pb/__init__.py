"""Generated protobuf code (see README.md in this folder). Do not edit ``pcc/``."""
