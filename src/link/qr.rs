//! A link's QR code (`GET /v1/links/{id}/qr`): the `qrcode` crate encodes, and renders SVG
//! itself and PNG through `image`.

use std::io::Cursor;

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use crate::error::FieldError;

/// Pixels a side unless asked: prints and scans well on a screen.
pub const SIZE_DEFAULT: u32 = 256;
pub const SIZE_MIN: u32 = 64;
pub const SIZE_MAX: u32 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml",
            Format::Png => "image/png",
        }
    }
}

/// `format` and `size` from the query (`svg` and 256 unless given).
pub fn params(format: Option<&str>, size: Option<&str>) -> Result<(Format, u32), FieldError> {
    let format = match format.unwrap_or("svg") {
        "svg" => Format::Svg,
        "png" => Format::Png,
        _ => return Err(FieldError::new("format", "must be svg or png")),
    };
    let size = match size {
        None => SIZE_DEFAULT,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (SIZE_MIN..=SIZE_MAX).contains(n))
            .ok_or_else(|| {
                FieldError::new(
                    "size",
                    format!("must be a whole number of pixels from {SIZE_MIN} to {SIZE_MAX}"),
                )
            })?,
    };
    Ok((format, size))
}

/// The QR code of `text`, at least `size` pixels a side (a whole number of pixels per module,
/// quiet zone included). Error correction M: a printed code still scans with ~15% of it lost.
pub fn render(text: &str, format: Format, size: u32) -> Result<Vec<u8>, FieldError> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)
        .map_err(|_| FieldError::new("id", "the link's URL is too long for a QR code"))?;
    Ok(match format {
        Format::Svg => code
            .render::<svg::Color<'_>>()
            .min_dimensions(size, size)
            .build()
            .into_bytes(),
        Format::Png => {
            let image = code
                .render::<image::Luma<u8>>()
                .min_dimensions(size, size)
                .build();
            let mut png = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .expect("encoding a PNG into memory cannot fail");
            png
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_from_the_query() {
        let cases: &[(Option<&str>, Option<&str>, Result<(Format, u32), &str>)] = &[
            (None, None, Ok((Format::Svg, 256))),
            (Some("png"), Some("512"), Ok((Format::Png, 512))),
            (Some("svg"), Some("64"), Ok((Format::Svg, 64))),
            (None, Some("2048"), Ok((Format::Svg, 2048))),
            (Some("gif"), None, Err("format")),
            (Some(""), None, Err("format")),
            (None, Some("63"), Err("size")),
            (None, Some("2049"), Err("size")),
            (None, Some("1e3"), Err("size")),
            (None, Some("-1"), Err("size")),
            (None, Some(""), Err("size")),
        ];
        for (format, size, want) in cases {
            let got = params(*format, *size).map_err(|e| e.field);
            assert_eq!(got, want.map_err(|f| f.to_string()), "{format:?} {size:?}");
        }
    }

    #[test]
    fn images_of_the_size_asked() {
        let url = "https://go.example.com/spring-sale";
        let svg = String::from_utf8(render(url, Format::Svg, 300).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        let png = render(url, Format::Png, 300).unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert!(
            image.width() >= 300 && image.width() < 300 + 40,
            "{}",
            image.width()
        );
        assert_eq!(image.width(), image.height());
    }
}
