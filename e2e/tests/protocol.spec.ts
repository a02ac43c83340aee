import { test, expect } from "@playwright/test";
import { readFileSync } from "node:fs";
import { ClientType, CloseCode, Limits, ServerType, State } from "../../static/src/terminal/protocol";

// The browser's protocol constants must equal the server's. terminal/protocol.json is
// generated from the Go constants (and a Go test keeps it so); this compares the
// TypeScript mirror with it, value by value, in both directions.
test("browser protocol constants mirror the Go ones", () => {
  const spec = JSON.parse(readFileSync("terminal/protocol.json", "utf8"));
  expect({ ...ClientType }).toEqual(spec.types.client);
  expect({ ...ServerType }).toEqual(spec.types.server);
  expect({ ...State }).toEqual(spec.states);
  expect({ ...CloseCode }).toEqual(spec.closeCodes);
  expect({ ...Limits }).toEqual(spec.limits);
});
