//! Checks shared by the Transformer encoder configs of the text and audio modalities.

/// Every named size at least 1, `d_model` a multiple of `n_heads` (attention splits the width
/// evenly over the heads) and `dropout` in [0, 1); the messages name the offending field.
pub fn validate_encoder_sizes(
    sizes: &[(&str, usize)],
    d_model: usize,
    n_heads: usize,
    dropout: f64,
) -> Result<(), String> {
    if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(format!("encoder {name} must be > 0"));
    }
    if n_heads == 0 || d_model % n_heads != 0 {
        return Err(format!(
            "encoder d_model ({d_model}) must be a multiple of n_heads ({n_heads})"
        ));
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(format!("encoder dropout must be in [0, 1), got {dropout}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_encoder_sizes;

    #[test]
    fn names_the_field_that_is_wrong() {
        let ok = validate_encoder_sizes(&[("d_model", 8), ("n_layers", 2)], 8, 2, 0.1);
        assert_eq!(ok, Ok(()));
        let zero = validate_encoder_sizes(&[("d_model", 8), ("n_layers", 0)], 8, 2, 0.1);
        assert_eq!(zero.unwrap_err(), "encoder n_layers must be > 0");
        let heads = validate_encoder_sizes(&[], 10, 4, 0.1).unwrap_err();
        assert_eq!(
            heads,
            "encoder d_model (10) must be a multiple of n_heads (4)"
        );
        let dropout = validate_encoder_sizes(&[], 8, 2, 1.0).unwrap_err();
        assert_eq!(dropout, "encoder dropout must be in [0, 1), got 1");
    }
}
