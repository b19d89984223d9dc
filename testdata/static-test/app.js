// Served as app.js.br or app.js.gz when the client accepts them.
export function greet(name) {
  return "hello, " + name;
}
