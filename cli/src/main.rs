fn main() {
    println!("dropscope: under construction");
}
