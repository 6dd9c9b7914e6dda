//! Owned and borrowed RGB8 images in HWC layout.

/// A borrowed HWC RGB8 image (`data.len() == h * w * 3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageView<'a> {
    pub h: usize,
    pub w: usize,
    pub data: &'a [u8],
}

/// An owned HWC RGB8 image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub h: usize,
    pub w: usize,
    pub data: Vec<u8>,
}

impl<'a> ImageView<'a> {
    /// Panics if `data` does not hold exactly `h * w * 3` bytes.
    pub fn new(h: usize, w: usize, data: &'a [u8]) -> Self {
        assert_eq!(
            data.len(),
            h * w * 3,
            "ImageView {h}x{w} needs {} bytes",
            h * w * 3
        );
        ImageView { h, w, data }
    }

    pub fn to_owned(&self) -> RgbImage {
        RgbImage {
            h: self.h,
            w: self.w,
            data: self.data.to_vec(),
        }
    }
}

impl RgbImage {
    /// Panics if `data` does not hold exactly `h * w * 3` bytes.
    pub fn new(h: usize, w: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            h * w * 3,
            "RgbImage {h}x{w} needs {} bytes",
            h * w * 3
        );
        RgbImage { h, w, data }
    }

    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            h: self.h,
            w: self.w,
            data: &self.data,
        }
    }
}
