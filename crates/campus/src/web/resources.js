// Each resource as the client shows it: its list's columns (and which the API
// orders by), its filters (SPEC §4) and its form's fields. Writes use the flat
// form (`department_id`, `program_id`), filled from selects.

const ACTIVE = [['', 'Any'], ['true', 'Active'], ['false', 'Inactive']];
const dept = (r) => (r.department ? r.department.code : '');

export const RESOURCES = {
  departments: {
    title: 'Departments',
    path: '/api/departments/',
    label: (r) => `${r.code} · ${r.name}`,
    columns: [
      { key: 'code', label: 'Code', sort: 'code' },
      { key: 'name', label: 'Name', sort: 'name' },
    ],
    filters: [],
    fields: [
      { name: 'code', label: 'Code', type: 'text', required: true },
      { name: 'name', label: 'Name', type: 'text', required: true },
    ],
  },
  programs: {
    title: 'Programs',
    path: '/api/programs/',
    label: (r) => `${r.code} · ${r.name}`,
    columns: [
      { key: 'code', label: 'Code', sort: 'code' },
      { key: 'name', label: 'Name', sort: 'name' },
      { key: 'duration_years', label: 'Years', sort: 'duration_years' },
      { key: 'department', label: 'Department', show: dept },
    ],
    filters: [{ name: 'department', label: 'Department', type: 'department' }],
    fields: [
      { name: 'code', label: 'Code', type: 'text', required: true },
      { name: 'name', label: 'Name', type: 'text', required: true },
      { name: 'duration_years', label: 'Duration (years)', type: 'number', required: true },
      { name: 'department_id', label: 'Department', type: 'department', from: 'department' },
    ],
  },
  faculty: {
    title: 'Faculty',
    path: '/api/faculty/',
    label: (r) => `${r.first_name} ${r.last_name}`,
    columns: [
      { key: 'employee_id', label: 'Employee ID', sort: 'employee_id' },
      { key: 'first_name', label: 'First name', sort: 'first_name' },
      { key: 'last_name', label: 'Last name', sort: 'last_name' },
      { key: 'email', label: 'Email', sort: 'email' },
      { key: 'designation', label: 'Designation', sort: 'designation' },
      { key: 'department', label: 'Department', show: dept },
      { key: 'is_active', label: 'Active', show: (r) => (r.is_active ? 'yes' : 'no') },
    ],
    filters: [
      { name: 'department', label: 'Department', type: 'department' },
      { name: 'designation', label: 'Designation', type: 'text' },
      { name: 'is_active', label: 'Status', type: 'choice', choices: ACTIVE },
    ],
    fields: [
      { name: 'employee_id', label: 'Employee ID', type: 'text', required: true },
      { name: 'first_name', label: 'First name', type: 'text', required: true },
      { name: 'last_name', label: 'Last name', type: 'text', required: true },
      { name: 'email', label: 'Email', type: 'email', required: true },
      { name: 'designation', label: 'Designation', type: 'text', required: true },
      { name: 'specialization', label: 'Specialization', type: 'text', required: true },
      { name: 'max_hours_per_week', label: 'Max hours per week', type: 'number' },
      { name: 'is_active', label: 'Active', type: 'checkbox' },
      { name: 'department_id', label: 'Department', type: 'department', from: 'department' },
    ],
  },
  students: {
    title: 'Students',
    path: '/api/students/',
    label: (r) => `${r.first_name} ${r.last_name}`,
    columns: [
      { key: 'roll_number', label: 'Roll number', sort: 'roll_number' },
      { key: 'first_name', label: 'First name', sort: 'first_name' },
      { key: 'last_name', label: 'Last name', sort: 'last_name' },
      { key: 'email', label: 'Email', sort: 'email' },
      { key: 'semester', label: 'Semester', sort: 'semester' },
      { key: 'batch', label: 'Batch', sort: 'batch' },
      { key: 'department', label: 'Department', show: dept },
      { key: 'program', label: 'Program', show: (r) => (r.program ? r.program.code : '') },
      { key: 'is_active', label: 'Active', show: (r) => (r.is_active ? 'yes' : 'no') },
    ],
    filters: [
      { name: 'department', label: 'Department', type: 'department' },
      { name: 'program', label: 'Program', type: 'program' },
      { name: 'semester', label: 'Semester', type: 'text', inputmode: 'numeric' },
      { name: 'batch', label: 'Batch', type: 'text', inputmode: 'numeric' },
      { name: 'is_active', label: 'Status', type: 'choice', choices: ACTIVE },
    ],
    fields: [
      { name: 'roll_number', label: 'Roll number', type: 'text', required: true },
      { name: 'first_name', label: 'First name', type: 'text', required: true },
      { name: 'last_name', label: 'Last name', type: 'text', required: true },
      { name: 'email', label: 'Email', type: 'email', required: true },
      { name: 'semester', label: 'Semester', type: 'number', required: true },
      { name: 'batch', label: 'Batch', type: 'number', required: true },
      { name: 'is_active', label: 'Active', type: 'checkbox' },
      { name: 'department_id', label: 'Department', type: 'department', from: 'department' },
      { name: 'program_id', label: 'Program', type: 'program', from: 'program' },
    ],
  },
  users: {
    title: 'Users',
    path: '/api/users/',
    label: (r) => r.username,
    columns: [
      { key: 'username', label: 'Username', sort: 'username' },
      { key: 'email', label: 'Email', sort: 'email' },
      { key: 'first_name', label: 'First name', sort: 'first_name' },
      { key: 'last_name', label: 'Last name', sort: 'last_name' },
      { key: 'role', label: 'Role', sort: 'role' },
      { key: 'is_active', label: 'Active', show: (r) => (r.is_active ? 'yes' : 'no') },
    ],
    filters: [
      {
        name: 'role',
        label: 'Role',
        type: 'choice',
        choices: [['', 'Any'], ['admin', 'admin'], ['staff', 'staff'], ['faculty', 'faculty'], ['student', 'student']],
      },
      { name: 'is_active', label: 'Status', type: 'choice', choices: ACTIVE },
    ],
    fields: [
      { name: 'username', label: 'Username', type: 'text', required: true },
      { name: 'email', label: 'Email', type: 'email', required: true },
      { name: 'first_name', label: 'First name', type: 'text' },
      { name: 'last_name', label: 'Last name', type: 'text' },
      {
        name: 'role',
        label: 'Role',
        type: 'choice',
        choices: [['admin', 'admin'], ['staff', 'staff'], ['faculty', 'faculty'], ['student', 'student']],
      },
      { name: 'is_active', label: 'Active', type: 'checkbox' },
      // Write-only: required to create, sent on an edit only when filled in.
      { name: 'password', label: 'Password', type: 'password', writeOnly: true },
    ],
  },
};

/** SPEC §4: admin writes everything, staff all but users, the others nothing. */
export function canWrite(role, resource) {
  return role === 'admin' || (role === 'staff' && resource !== 'users');
}
