//! The `twill` CNI executable: the skeleton over [`twill_meta_plugin::Twill`].

fn main() {
    twill_cni::skel::main(&twill_meta_plugin::Twill)
}
