// Package redact says once what a credential looks like, and replaces it
// with REDACTED in what the agent exports: the values of sensitive names
// (query parameters, command-line flags, NAME=value pairs), of sensitive
// headers, and the userinfo and query values of URLs.
//
// Names match case-insensitively, ignoring '-', '_', '.' and spaces, as a
// whole (api_key matches "apikey"), as a word or run of words of a longer
// name (X-Amz-Signature matches "signature", dbPassword matches
// "password"), and, for names of five letters or more, anywhere inside it
// (DBPASSWORD matches "password").
package redact
