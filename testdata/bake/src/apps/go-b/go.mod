module example.com/go-b

go 1.22
