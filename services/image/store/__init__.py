"""ImageService's persistence: the models and the repositories (cache and
images, generation leases, the settlement outbox). The only code that talks to
the database; each repository works in the session it is given."""
