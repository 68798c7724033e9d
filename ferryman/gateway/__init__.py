"""Generated protobuf/gRPC stubs (see `make proto`)."""
