import { setDefaultTimeout } from "bun:test";

// bunfig's [test] timeout is ignored by bun; end-to-end tests write and read real datasets.
setDefaultTimeout(60_000);
