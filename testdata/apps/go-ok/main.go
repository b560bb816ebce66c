// Command ok is the proxy benchmarks' backend: a Go HTTP server that
// answers "ok" to every request, on $PORT.
package main

import (
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := "127.0.0.1:" + os.Getenv("PORT")
	log.Fatal(http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
}
