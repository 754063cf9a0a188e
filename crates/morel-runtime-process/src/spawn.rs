//! Starting a child with the protocol pipes on fds 3 (host → child) and 4 (child → host).
//! This is the one place that needs `unsafe`: `pre_exec` runs between fork and exec.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A pipe whose both ends are close-on-exec in the parent.
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int buffer; on success both fds are fresh and owned here.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Arranges for `to_child` (read end) to be fd 3 and `from_child` (write end) to be fd 4 in
/// the child. The fds must stay open in the parent until the child has been spawned.
pub fn map_protocol_fds(
    cmd: &mut tokio::process::Command,
    to_child: &OwnedFd,
    from_child: &OwnedFd,
) {
    let r = to_child.as_raw_fd();
    let w = from_child.as_raw_fd();
    // SAFETY: the closure only calls async-signal-safe functions (fcntl, dup2) on fds that are
    // open in the forked child, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Move both out of the 3..=4 range first, so neither dup2 clobbers the other.
            let r2 = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
            let w2 = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
            if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to the whole process group led by `pid`.
pub fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid targets a process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}
