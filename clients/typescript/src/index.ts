// @signing-enclave/client: what browsers and backends need to use the signing enclave.
//
// - authorization: the exact SIWS message the enclave renders (SPEC §15), checked before a
//   Wallet Standard wallet signs it;
// - sealing: scheduled records and imported vaults sealed with WebCrypto to the KMS public key;
// - provenance: Nitro attestation documents verified to a pinned root, PCRs and the record binding;
// - SignerClient: the parent's HTTP API with typed errors and safe retries;
// - the user's powers: revoke grants and export secrets on the wallet's signature (HPKE to an X25519
//   key the browser generated);
// - receipts: the enclave's hash-chained decision receipts and signed checkpoints, verified.

export * from "./bytes.js";
export * from "./json.js";
export * from "./policy.js";
export * from "./authorization.js";
export * from "./wallet.js";
export * from "./records.js";
export * from "./sealing.js";
export { AWS_NITRO_ROOT_G1_SHA256, awsNitroRootG1 } from "./aws-root.js";
export * from "./attestation.js";
export { CborError, decodeCbor, type CborValue } from "./cbor.js";
export { CertificateError, parseCertificate, type Certificate } from "./x509.js";
export * from "./client.js";
export * from "./user.js";
export * from "./receipts.js";
