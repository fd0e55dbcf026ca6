//! The `portmap` CNI executable: the skeleton over [`twill_portmap::Portmap`].

fn main() {
    twill_cni::skel::main(&twill_portmap::Portmap)
}
