//! morel-test-support
