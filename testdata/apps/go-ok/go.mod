module ok

go 1.24
