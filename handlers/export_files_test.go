package handlers

// FileStatus exposes the file error mapping to the table test.
var FileStatus = fileStatus

// ErrStalled and ErrDraining are the causes of cut transfers, for the table test.
var ErrStalled, ErrDraining = errStalled, errDraining
