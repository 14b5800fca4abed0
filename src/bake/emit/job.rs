//! placeholder
pub fn render(
    _: &super::super::graph::Graph,
    _: &[usize],
    _: &super::Options,
) -> Result<String, crate::bake::BakeError> {
    Ok(String::new())
}
