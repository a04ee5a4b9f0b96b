"""ImageService's values and rules: accounting values, the cache policy and
key, the GenerateImage command and its validation, settlements, results and
how failures are described. No I/O, no SQLAlchemy, no gRPC."""
