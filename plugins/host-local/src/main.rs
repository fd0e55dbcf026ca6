//! The `host-local` executable: the skeleton over [`twill_host_local::HostLocal`].

fn main() {
    twill_cni::skel::main(&twill_host_local::HostLocal)
}
