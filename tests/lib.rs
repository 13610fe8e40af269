//! End-to-end tests live in `api/` (one binary) and `schemas.rs`.
