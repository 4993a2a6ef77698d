//! tower middleware built on `fairgate::limit` (work in progress on a branch).
