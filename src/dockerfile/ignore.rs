//! `.dockerignore` matching with Docker's semantics.
