// Renders a Go text/template the way Ollama fills one in: render_template TEMPLATE_FILE DATA_JSON_FILE.
// The data is a JSON object of fields (Prompt, System, Response), printed to stdout.
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

func main() {
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("modelfile").Parse(string(text)))
	if err := tmpl.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
