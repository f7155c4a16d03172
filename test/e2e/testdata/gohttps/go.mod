module periscope.example/gohttps

go 1.18
