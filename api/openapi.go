package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of every route this package serves.
// It is written by hand; docs/openapi.json is a copy (go generate ./api
// refreshes it, and TestOpenAPIDocsCopy fails while they differ).
//
//go:generate cp openapi.json ../docs/openapi.json
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI answers GET /v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPI)
}
