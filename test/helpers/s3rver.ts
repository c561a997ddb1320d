/**
 * A local S3-compatible server for tests: `s3rver` (npm 3.7.x) on a free port of 127.0.0.1, with
 * its objects in a temporary folder removed when it stops.
 *
 * It runs under Node in a subprocess, not inside the test process: s3rver encrypts its listing
 * continuation tokens with DES, which Bun's crypto does not have (a paged listing answers 500
 * under Bun), and which Node 17+ has only with `--openssl-legacy-provider`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** s3rver's one account. */
export const S3RVER_KEY = "S3RVER";
export const S3RVER_SECRET = "S3RVER";

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** The folder s3rver keeps its buckets in. */
  readonly directory: string;
  /** The environment a subprocess (or `s3ClientFrom`) reads the server and its credentials from. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

const LAUNCHER = `
const S3rver = require(process.argv[1]);
const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: process.argv[2],
  configureBuckets: JSON.parse(process.argv[3]).map((name) => ({ name })) });
server.run().then((address) => console.log(JSON.stringify({ port: address.port })), (error) => { console.error(error); process.exit(1); });
process.on("SIGTERM", () => server.close().then(() => process.exit(0)));
`;

/** Starts s3rver with `buckets` created; resolves once it listens. */
export async function startS3rver(buckets: readonly string[] = []): Promise<S3rverHandle> {
  const directory = mkdtempSync(join(tmpdir(), "sluice-s3rver-"));
  const main = fileURLToPath(import.meta.resolve("s3rver"));
  const child = Bun.spawn(["node", "--openssl-legacy-provider", "-e", LAUNCHER, main, directory, JSON.stringify(buckets)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) {
      const stderr = await new Response(child.stderr).text();
      rmSync(directory, { recursive: true, force: true });
      throw new Error(`s3rver did not start: ${stderr}`);
    }
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const { port } = JSON.parse(text.slice(0, text.indexOf("\n"))) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    directory,
    env: { S3_ENDPOINT: endpoint, AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET, AWS_REGION: "us-east-1" },
    async stop() {
      child.kill("SIGTERM");
      await child.exited;
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
