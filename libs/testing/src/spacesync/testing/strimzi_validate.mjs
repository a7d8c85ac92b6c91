// Validates Strimzi custom resources (a JSON array on stdin) with the validators that
// @kubernetes-models/strimzi-kafka-operator generates from Strimzi's CRDs; prints a JSON array of errors
// ("Kind/name: field: message"). argv[2]: the folder holding its node_modules (tests/deploy/k8s_build.py).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const models = join(process.argv[2], "node_modules", "@kubernetes-models", "strimzi-kafka-operator");
const manifests = JSON.parse(readFileSync(0, "utf8"));
const errors = [];
for (const manifest of manifests) {
  const where = `${manifest.kind}/${manifest.metadata?.name}`;
  const [group, version] = manifest.apiVersion.split("/");
  let model;
  try {
    model = await import(pathToFileURL(join(models, group, version, `${manifest.kind}.js`)).href);
  } catch {
    errors.push(`${where}: no Strimzi schema for ${manifest.apiVersion} ${manifest.kind}`);
    continue;
  }
  try {
    new model[manifest.kind](manifest).validate();
  } catch (error) {
    for (const e of error.errors ?? [{ instancePath: "", message: String(error) }]) {
      const field = e.instancePath.replace(/^\//, "").replaceAll("/", ".") || "(top)";
      const detail = e.params?.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : "";
      errors.push(`${where}: ${field}: ${e.message}${detail}`);
    }
  }
}
process.stdout.write(JSON.stringify(errors));
