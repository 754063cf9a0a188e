//! Seed 000 API compatibility tests (written next).
