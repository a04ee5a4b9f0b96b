"""ImageService's use cases: GenerateImage's flow (generate.py) and its
collaborators (cache lookup, single flight, keeping images, the settler), the
read-only queries and the cache admin. Collaborators arrive as arguments;
main.py builds them all. No gRPC here; SQL only through store/."""
