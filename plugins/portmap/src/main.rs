fn main() {
    twill_cni::skel::main(&twill_portmap::Portmap)
}
