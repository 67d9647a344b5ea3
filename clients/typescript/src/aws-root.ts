// The AWS Nitro Enclaves Root G1 certificate (`CN=aws.nitro-enclaves`), DER, as published by AWS
// (AWS_NitroEnclaves_Root-G1.zip) and pinned by the Rust verifier (`attestation/src/aws_nitro_root_g1.der`).
// Production verifiers anchor every attestation chain here; a test checks the bytes against the
// Rust copy and the published SHA-256.

import { fromBase64 } from "./bytes.js";

/** SHA-256 of the root's DER, as AWS publishes it. */
export const AWS_NITRO_ROOT_G1_SHA256 =
  "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

const DER_BASE64 =
  "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTELMAkGA1UEBhMCVVMxDzANBgNVBAoMBkFt" +
  "YXpvbjEMMAoGA1UECwwDQVdTMRswGQYDVQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4" +
  "MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQLDANBV1MxGzAZBgNVBAMMEmF3cy5uaXRy" +
  "by1lbmNsYXZlczB2MBAGByqGSM49AgEGBSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb" +
  "48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZEh8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/" +
  "BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkFR+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC" +
  "MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPWrfMCMQCi85sWBbJwKKXdS6BptQFuZbT7" +
  "3o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6NIwLz3/Y=";

/** The AWS Nitro Enclaves Root G1 certificate, DER (a fresh copy on every call). */
export function awsNitroRootG1(): Uint8Array {
  return fromBase64(DER_BASE64);
}
