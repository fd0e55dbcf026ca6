//! The `bridge` CNI executable: the skeleton over [`twill_bridge::Bridge`].

fn main() {
    twill_cni::skel::main(&twill_bridge::Bridge)
}
