//! The `loopback` CNI executable: the skeleton over [`twill_loopback::Loopback`].

fn main() {
    twill_cni::skel::main(&twill_loopback::Loopback)
}
