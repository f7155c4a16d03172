module periscope.example/goapp

go 1.18
