// Command notes serves a small notes API. Like a Heroku app it takes its
// port from $PORT, and it refuses to start without it, or without the
// API token that every call but /healthz must carry.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"sync"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("PORT is not set")
	}
	token := os.Getenv("NOTES_API_TOKEN")
	if token == "" {
		log.Fatal("NOTES_API_TOKEN is not set")
	}
	var mu sync.Mutex
	notes := []string{}
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /notes", authed(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"notes": notes})
	}))
	mux.HandleFunc("POST /notes", authed(func(w http.ResponseWriter, r *http.Request) {
		var n struct{ Text string }
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		notes = append(notes, n.Text)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	log.Printf("notes listening on 127.0.0.1:%s", port)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, mux))
}
