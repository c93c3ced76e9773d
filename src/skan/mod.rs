//! SKAdNetwork and AdAttributionKit postbacks (SPEC "SKAdNetwork and AdAttributionKit
//! postbacks"): Apple's keys in one place (`keys`), their signatures checked (`signature`),
//! a postback read into one shape whichever framework sent it (`postback`).

pub mod keys;
pub mod postback;
pub mod signature;
