// Where the tests find things: the package, the repository, the shared test vectors.

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import { parseJson, type JsonValue } from "@signing-enclave/client";

/** clients/typescript (tests run from build/test/...). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
/** The repository root. */
export const repoRoot = path.resolve(packageRoot, "../..");

/** `../shared/vectors` next to the repository, or `$SIGNER_VECTORS_DIR` (as the Rust tests). */
export function vectorsDir(): string {
  const dir = process.env.SIGNER_VECTORS_DIR ?? path.join(repoRoot, "../shared/vectors");
  if (!existsSync(dir)) throw new Error(`test vectors not found at ${dir} (set SIGNER_VECTORS_DIR)`);
  return dir;
}

export function readVector(relative: string): Uint8Array {
  return new Uint8Array(readFileSync(path.join(vectorsDir(), relative)));
}

/** `clients/vectors/golden.json`, with u64 values exact. */
export function golden(): any {
  return parseJson(readFileSync(path.join(repoRoot, "clients/vectors/golden.json"), "utf8")) as JsonValue;
}

/** Where tests write what a person may want to look at (screenshots). */
export const outputDir = process.env.SIGNER_TS_TEST_OUTPUT ?? path.join(packageRoot, "test-output");
