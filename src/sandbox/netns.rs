//! Network namespaces made from the builder's side, for steps that join them instead of unsharing their
//! own: a namespace with only loopback up, in which a caller-given setup (binding a listening socket) runs
//! before anyone else is in it. What the sockets are for is the caller's business.

use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;

use crate::sys;

/// Creates a network namespace with loopback up, runs `setup` inside it and returns a descriptor of the
/// namespace with `setup`'s result. Sockets `setup` creates stay in the namespace after it returns.
///
/// The work happens on a thread of its own that ends right after: `unshare(CLONE_NEWNET)` changes only
/// the calling thread, so the rest of the (multi-threaded) builder never leaves the host's network.
pub fn loopback_netns<T: Send + 'static>(
    setup: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<(OwnedFd, T)> {
    std::thread::Builder::new()
        .name("kiln-netns".to_string())
        .spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            sys::loopback_up()?;
            let value = setup()?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok((OwnedFd::from(ns), value))
        })?
        .join()
        .map_err(|_| std::io::Error::other("the network namespace thread panicked"))?
}
