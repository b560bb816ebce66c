// agent-services: a small task API, shaped like the services slipway's
// users deploy by hand. It keeps its tasks in data/tasks.json and wants
// a bearer token on every call but /health.
import { createServer, IncomingMessage, ServerResponse } from "node:http";
import { mkdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";

interface Task {
  id: number;
  title: string;
}

const token = process.env.VERS_AUTH_TOKEN;
if (!token) {
  console.error("VERS_AUTH_TOKEN is not set: refusing to serve unauthenticated");
  process.exit(1);
}
const port = Number(process.env.PORT || 3100);
const dataDir = process.env.DATA_DIR || "data";
const store = join(dataDir, "tasks.json");
mkdirSync(dataDir, { recursive: true });

function load(): Task[] {
  try {
    return JSON.parse(readFileSync(store, "utf8")) as Task[];
  } catch {
    return [];
  }
}

function save(tasks: Task[]): void {
  writeFileSync(store + ".tmp", JSON.stringify(tasks));
  renameSync(store + ".tmp", store);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === "/health") {
    return send(res, 200, { ok: true });
  }
  if (req.headers.authorization !== `Bearer ${token}`) {
    return send(res, 401, { error: "unauthorized" });
  }
  if (req.url === "/tasks" && req.method === "GET") {
    return send(res, 200, { tasks: load() });
  }
  if (req.url === "/tasks" && req.method === "POST") {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk));
    req.on("end", () => {
      const tasks = load();
      const task = { id: tasks.length + 1, title: String(JSON.parse(body).title) };
      tasks.push(task);
      save(tasks);
      send(res, 201, task);
    });
    return;
  }
  send(res, 404, { error: "not found" });
}).listen(port, "127.0.0.1", () => console.log(`agent-services listening on ${port}`));
