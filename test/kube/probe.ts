// Compiled by test/kube.test.ts into a standalone binary: connects with a kubeconfig that
// carries a CA and a client certificate, and prints who the API server says it is.
//   kube-probe KUBECONFIG
import * as v from "valibot";
import { KubeClient } from "../../reconciler/clients/kube/client.ts";
import { KubeNode } from "../../reconciler/clients/kube/types.ts";

const Review = v.object({ status: v.object({ userInfo: v.object({ username: v.string() }) }) });
const path = process.argv[2];
if (!path) {
  console.error("usage: kube-probe KUBECONFIG");
  process.exit(2);
}
const client = await KubeClient.connect({ source: { kind: "kubeconfig", path } });
const review = await client.request(
  "POST",
  "/apis/authentication.k8s.io/v1/selfsubjectreviews",
  { body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" } },
  Review,
);
const { items } = await client.list("/api/v1/nodes", KubeNode);
console.log(JSON.stringify({ username: review.status.userInfo.username, nodes: items.length }));
client.close();
