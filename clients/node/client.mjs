#!/usr/bin/env node
// ferryman-client (Node): calls a Ferryman gateway over gRPC -- Route (the routing decision only)
// and ChatCompletion (a routed completion) -- and prints both decisions, in the same line format
// as the Go and Python clients.
//
//   npm ci --ignore-scripts && node client.mjs --addr 127.0.0.1:50061 --prompt "Prove that sqrt(2) is irrational."
//
// The service definitions come from the repository's proto/ (or --proto-dir), loaded at run time by
// @grpc/proto-loader, so there is no generated code to keep fresh. The client key, if the gateway
// requires one, comes from --api-key or FERRYMAN_API_KEY.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));

const { values: opts } = parseArgs({
  options: {
    addr: { type: "string", default: "127.0.0.1:50061" },
    model: { type: "string", default: "ferryman-balanced" },
    prompt: { type: "string", default: "Explain the difference between a mutex and a semaphore." },
    "api-key": { type: "string", default: "" },
    "no-chat": { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "30000" },
    "proto-dir": { type: "string", default: join(here, "..", "..", "proto") },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (opts.help) {
  console.log(`usage: node client.mjs [--addr HOST:PORT] [--model NAME] [--prompt TEXT] [--api-key KEY]
                      [--no-chat] [--timeout-ms MS] [--proto-dir DIR]
Calls Route and ChatCompletion on a Ferryman gateway and prints the routing decisions.
--api-key defaults to $FERRYMAN_API_KEY; --no-chat skips ChatCompletion (no provider needed).`);
  process.exit(0);
}

/** Loads ferryman.gateway.v1.GatewayService from the .proto contract. */
function loadGateway(protoDir) {
  const definition = protoLoader.loadSync("ferryman/gateway/v1/gateway.proto", {
    includeDirs: [protoDir],
    keepCase: true, // field names as in the .proto (strong_win_rate, served_model, ...)
    longs: String,
    enums: String, // enum values by name (TIER_WEAK), as the other clients print them
    defaults: true, // unset scalars read as their proto3 defaults
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).ferryman.gateway.v1.GatewayService;
}

/** Promise wrapper over one unary call, with a deadline and the client key. */
function unary(client, method, request, apiKey, timeoutMs) {
  const metadata = new grpc.Metadata();
  if (apiKey) metadata.set("authorization", `Bearer ${apiKey}`);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + timeoutMs }, (err, response) =>
      err ? reject(new Error(`${method}: ${grpc.status[err.code]}: ${err.details}`)) : resolve(response),
    );
  });
}

// scores lists every score used as tier:score/threshold, cheapest tier first (as the Go and Python clients).
function formatDecision(d) {
  const f = (x) => Number(x ?? 0).toFixed(6);
  const scores = (d.tier_scores ?? []).map((t) => `${t.tier}:${f(t.score)}/${f(t.threshold)}`).join(",");
  return (
    `tier=${d.tier} model=${d.model} router=${d.router} score=${f(d.score)} threshold=${f(d.threshold)} ` +
    `source=${d.source} policy=${d.policy} tier_name=${d.tier_name} scores=${scores}`
  );
}

async function main() {
  const GatewayService = loadGateway(opts["proto-dir"]);
  const client = new GatewayService(opts.addr, grpc.credentials.createInsecure());
  const apiKey = opts["api-key"] || process.env.FERRYMAN_API_KEY || "";
  const timeoutMs = Number(opts["timeout-ms"]);
  const messages = [{ role: "user", content: opts.prompt }];
  try {
    const route = await unary(client, "Route", { model: opts.model, messages }, apiKey, timeoutMs);
    console.log(`route ${formatDecision(route.decision)}`);
    if (!opts["no-chat"]) {
      const resp = await unary(client, "ChatCompletion", { model: opts.model, messages }, apiKey, timeoutMs);
      const acc = resp.accounting ?? {};
      console.log(
        `chat ${formatDecision(resp.decision)} served_model=${acc.served_model} degraded=${acc.degraded} ` +
          `cost_usd=${Number(acc.cost_usd ?? 0).toFixed(6)} reply=${JSON.stringify(resp.message?.content ?? "")}`,
      );
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(`ferryman-client: ${err.message}`);
  process.exit(1);
});
