//! Placeholder: built out by the read-side issue.
