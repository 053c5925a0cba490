"""Generated from protos/tokenlabs/v1 by `make protos`; do not edit."""
