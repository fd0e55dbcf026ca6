fn main() {
    twill_cni::skel::main(&twill_meta_plugin::Twill)
}
