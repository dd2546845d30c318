// The hello handler in JavaScript: a wasi:http/proxy component built by
// `jco componentize` (componentize-js, StarlingMonkey). The fetch-event style:
// componentize-js turns this listener into wasi:http/incoming-handler#handle.
addEventListener("fetch", (event) =>
  event.respondWith(new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } })),
);
