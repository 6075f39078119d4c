//! mimalloc for every logctl binary (each links this crate: the services, the console and its
//! load generator).
//!
//! glibc's malloc was the largest user-space part of the gateway's CPU per single event: a
//! fifth of it at its knee (`logctl bench --profile`), mostly in its slow paths
//! (`unlink_chunk`, `malloc_consolidate`: hyper's 8 KiB read buffers are past glibc's
//! per-thread caches) and its arena lock. Under mimalloc, with the same load (15,000 single
//! events/s through the gateway, four runs each), the gateway's CPU per event was 34 µs against
//! glibc's 38, and the generator's about an eighth less. mimalloc's default asks the kernel for
//! transparent huge pages, and a 2 MiB page touched is resident whole: the gateway then started
//! at 18 MiB and peaked at 74 (glibc: 8 and 44), which is why the services once kept glibc.
//! Built without (`no_thp`), it started at 9 MiB and peaked at 34 to 37.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
