//! Socket options that neither std, socket2 nor rustix set, so the workspace's
//! `forbid(unsafe_code)` can stand everywhere else: today only `TCP_DEFER_ACCEPT`
//! (std has it behind the unstable `tcp_deferaccept` feature, rust-lang/rust#119639).
//!
//! `TCP_DEFER_ACCEPT` on a listening socket makes the kernel hand over a connection
//! only once its first bytes came, or after about the given seconds (then with nothing
//! to read). For a protocol whose client speaks first, the gateway then never wakes for
//! a connection it cannot serve yet, and never reads it before its bytes are there.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Sets `TCP_DEFER_ACCEPT` on a listening TCP socket: 0 turns it off.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn set_defer_accept(sock: impl AsFd, seconds: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    set_int(
        sock.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        value,
    )
}

/// `TCP_DEFER_ACCEPT` as the kernel keeps it: whole retransmission periods of the
/// SYN-ACK, so a value read back can be above the one set (never 0 once set).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn defer_accept(sock: impl AsFd) -> io::Result<u32> {
    let v = get_int(sock.as_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT)?;
    Ok(u32::try_from(v).unwrap_or(0))
}

/// Elsewhere the option does not exist; connections are handed over as they come.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn set_defer_accept(_sock: impl AsFd, _seconds: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn defer_accept(_sock: impl AsFd) -> io::Result<u32> {
    Ok(0)
}

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a descriptor borrowed for the call; the option's value is read
    // from a live `c_int` whose size is the length passed.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is borrowed for the call; the kernel writes at most `len` bytes into
    // `value`, a live `c_int`, and the new length into `len`.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_read_back_and_off_again() -> io::Result<()> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        assert_eq!(defer_accept(&l)?, 0);
        set_defer_accept(&l, 1)?;
        assert!(defer_accept(&l)? >= 1);
        set_defer_accept(&l, 0)?;
        assert_eq!(defer_accept(&l)?, 0);
        Ok(())
    }

    /// A descriptor that is not a socket gets the kernel's error, not a panic.
    #[test]
    fn a_file_is_refused() -> io::Result<()> {
        let f = std::fs::File::open("/dev/null")?;
        assert!(set_defer_accept(&f, 1).is_err());
        assert!(defer_accept(&f).is_err());
        Ok(())
    }
}
