package handlers

// FileStatus exposes the file error mapping to the table test.
var FileStatus = fileStatus
