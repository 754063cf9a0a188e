//! morel-runtime-process
