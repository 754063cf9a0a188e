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

/// Arranges for `to_child` (read end) to be fd 3 and `from_child` (write ends) to be fds 4,
/// 5, … in the child. The fds must stay open in the parent until the child has been spawned.
pub fn map_protocol_fds(
    cmd: &mut tokio::process::Command,
    to_child: &OwnedFd,
    from_child: &[OwnedFd],
) {
    let r = to_child.as_raw_fd();
    let mut w = [-1; MAX_REPLY_PIPES];
    for (slot, fd) in w.iter_mut().zip(from_child) {
        *slot = fd.as_raw_fd();
    }
    let n = from_child.len().min(MAX_REPLY_PIPES);
    // SAFETY: the closure only calls async-signal-safe functions (fcntl, dup2) on fds that are
    // open in the forked child, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Move every fd out of the 3..=4+n range first, so no dup2 clobbers another.
            let base = 10 + MAX_REPLY_PIPES as i32;
            let r2 = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, base);
            if r2 < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut w2 = [-1; MAX_REPLY_PIPES];
            for i in 0..n {
                w2[i] = libc::fcntl(w[i], libc::F_DUPFD_CLOEXEC, base);
                if w2[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::dup2(r2, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (i, fd) in w2.iter().enumerate().take(n) {
                if libc::dup2(*fd, 4 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The most reply pipes a worker gets (one per serving thread, up to this).
pub const MAX_REPLY_PIPES: usize = 16;

/// Sends `signal` to the whole process group led by `pid`.
pub fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid targets a process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}
